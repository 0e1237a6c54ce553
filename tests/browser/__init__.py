"""Browser tests of the built book (headless Chromium via playwright)."""
