"""Figures and summaries read from run directories; never imports training code."""
