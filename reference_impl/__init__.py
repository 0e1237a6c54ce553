"""The course reference implementation (filled in by the lead)."""
