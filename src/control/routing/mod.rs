//! Changing the routing rules in the catalog: `viewgate route …` and the admin API's
//! `/routes`. The rule model itself is shared (`model`), so the proxies read exactly what
//! these commands write.

pub mod route_args;
pub mod routes;

pub use route_args::RouteArgs;
