"""Report: Markdown and self-contained HTML with tables beside the published numbers."""
