"""Sensors that wait on Clearout work started elsewhere, reusing the triggers."""
