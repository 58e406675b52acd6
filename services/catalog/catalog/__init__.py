"""The product catalog: lists, finds and searches the products the shop sells."""
