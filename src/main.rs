#![forbid(unsafe_code)]
//! Exim's pipe transport runs this for every pipe delivery (force_command).

fn main() {
    cagepipe::main()
}
