"""The Hub and model folders: publishing (`publish`), the checks a folder passes before it is loaded or pushed
(`folder_checks`), model cards (`model_card`, with `complexity` for their parameter and MAC counts), and the atomic
output folders every writer of a folder uses (`output_folders`)."""
