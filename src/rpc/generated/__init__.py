"""Stubs generated from tts.proto by ``make proto``; do not edit."""
