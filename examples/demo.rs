//! Placeholder until the demo lands (issue: examples).
fn main() {
    println!("the demo arrives with a later issue");
}
