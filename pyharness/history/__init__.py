"""Regression tracking: the results store (store, models, migrations), each
figure's history and its change points (series, changes), and their text,
markdown and JSON forms (formats)."""
