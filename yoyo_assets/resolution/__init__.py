"""Entity resolution: which real-world entity each person mention names (issue 46)."""
