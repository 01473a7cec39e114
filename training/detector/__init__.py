"""The detector: every wardrobe item in a photo, its box and rubricator class."""
