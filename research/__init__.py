"""The lab: collection builders, fusion calibration and leave-one-out scripts (not shipped in the wheel)."""
