"""Learning from history: mining recurring work into patterns and skill proposals."""
