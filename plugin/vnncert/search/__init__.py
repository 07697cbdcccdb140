"""Searches: branch and bound over input boxes (`input_split`) and over ReLU activations
(`activation_split`), one of each, shared by the engines; the falsifier's sampling and PGD
(`falsify`). Built on bounds/; they know nothing of which engine calls them.
"""
