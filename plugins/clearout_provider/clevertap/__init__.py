"""CleverTap: what this provider writes to profiles (the property mapping); the hook lives in hooks/."""
