"""The shipped ImageNet-1k class names."""

from timm.data import ImageNetInfo

from poolformer_hf import PoolFormerConfig
from poolformer_hf.data.labels import imagenet_id2label


def test_names_are_timms_imagenet_1k_lemmas_in_index_order():
    id2label = imagenet_id2label()
    info = ImageNetInfo()
    assert list(id2label) == list(range(1000))
    assert list(id2label.values()) == [info.index_to_description(i) for i in range(1000)]
    assert id2label[0] == "tench, Tinca tinca"
    assert id2label[999] == "toilet tissue, toilet paper, bathroom tissue"


def test_returns_a_fresh_dict_each_call():
    first = imagenet_id2label()
    first[0] = "changed"
    assert imagenet_id2label()[0] == "tench, Tinca tinca"


def test_fits_a_config_id2label():
    config = PoolFormerConfig(id2label=imagenet_id2label())
    assert config.num_labels == 1000
    assert config.id2label[281] == "tabby, tabby cat"
