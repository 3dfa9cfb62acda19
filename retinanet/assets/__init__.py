"""Files shipped with the engine."""
from pathlib import Path

SAMPLE_IMAGE = Path(__file__).with_name("astronaut.jpg")  # public domain (NASA), see README.md here
