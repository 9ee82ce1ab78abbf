"""Small bundled examples that run offline (numpy only)."""
