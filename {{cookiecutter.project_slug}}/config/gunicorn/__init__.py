"""Gunicorn presets, one per worker model: `python -m config.gunicorn` starts one."""
