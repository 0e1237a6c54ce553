"""Drawing code of the chapters' animations, importable so that tests can drive it."""
