"""Client scripts run by other clients' interpreters (e.g. tritonclient's own venv); never imported by tests."""
