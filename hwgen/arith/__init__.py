"""Integer arithmetic that knows nothing about hardware: CSD digits, intervals, rounding."""
