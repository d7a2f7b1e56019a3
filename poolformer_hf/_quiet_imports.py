"""One notice silenced at its source: torchao's import-time `register_constant()` deprecation.

transformers imports torchao, when it is installed, as it loads its quantizers (any `PreTrainedModel` import), and
torchao 0.18 registers two of its Enums with torch's pytree; torch 2.14 logs, once per Enum, that this is
deprecated. The notice is about torchao's code and asks nothing of our users, so this filter drops exactly those
records (the `torch.utils._pytree` logger, an Enum defined in torchao) and lets every other record through. It is
installed when this module is imported: first thing in `poolformer_hf/__init__.py`.
"""

import logging

_MESSAGE_START = "%s is an Enum subclass and is now natively supported"


def _is_torchao_enum_notice(record: logging.LogRecord) -> bool:
    if not isinstance(record.msg, str) or not record.msg.startswith(_MESSAGE_START) or not record.args:
        return False
    registered = record.args[0] if isinstance(record.args, tuple) else None
    return getattr(registered, "__module__", "").split(".")[0] == "torchao"


class TorchaoEnumNoticeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _is_torchao_enum_notice(record)


def install() -> None:
    logger = logging.getLogger("torch.utils._pytree")
    if not any(isinstance(existing, TorchaoEnumNoticeFilter) for existing in logger.filters):
        logger.addFilter(TorchaoEnumNoticeFilter())


install()
