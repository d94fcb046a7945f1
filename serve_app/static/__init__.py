"""Static files of the operations dashboard (a package so that wheels ship them as package data)."""
