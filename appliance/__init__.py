"""The appliance's use cases, which every entry point (UI, CLI, API) calls."""
