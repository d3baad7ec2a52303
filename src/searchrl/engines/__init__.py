"""Existing distributed engines driven by searchrl's rollout, mask and rewards (TRL for the GRPO family)."""
