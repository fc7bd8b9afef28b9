"""Reading many runs at once: the experiment runner (`experiments`) and the paper's figures
(`figures`)."""
