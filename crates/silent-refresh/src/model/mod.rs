//! Reference model and rule checker (being written).
