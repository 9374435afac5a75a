"""One adapter per platform: signature check and normalization into the common events."""
