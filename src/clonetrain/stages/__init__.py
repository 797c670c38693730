"""One module per stage, each with `run(cfg, ws, out_dir) -> StageResult`; pipeline.py orders them."""
