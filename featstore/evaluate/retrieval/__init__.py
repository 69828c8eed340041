"""Instance retrieval from cached features: FAISS indexes and the retrieve task."""
