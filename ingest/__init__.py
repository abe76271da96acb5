"""File shares to chunks: crawl, parse and OCR, chunk, embed, write to the index."""
