"""Run the gunicorn presets as real processes and measure them: `nox -s loadtest`."""
