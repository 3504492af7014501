//! Shadow runs in the catalog: [`run`] starts and stops one (`viewgate shadow start|stop`, the
//! admin API), [`record`] is what the proxies' shadow workers write (their counts, the
//! differences found, the end of a spent budget), [`report`] reads it all back
//! (`viewgate shadow report`). The sampling and comparing are in `proxy::shadow_tap` and
//! `telemetry::shadow`.

pub mod record;
pub mod report;
pub mod run;
