"""The presets' database side: the connection plan, the settings that apply it, the 503."""
