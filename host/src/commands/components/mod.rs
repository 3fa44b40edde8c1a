//! `compute-bridge components …`: one module per subcommand.

pub(crate) mod inspect;
pub(crate) mod new;
pub(crate) mod swap;
pub(crate) mod test;
