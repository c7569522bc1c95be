"""The table layer: JSON Schema to Arrow, reading result files, validation. No I/O but files."""
