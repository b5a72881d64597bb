"""Test helpers of the qubes stand-in (upstream's qubes.tests is larger)."""
