"""The Gradio studio: layout and thin callbacks over `uprm` and `annotations`."""
