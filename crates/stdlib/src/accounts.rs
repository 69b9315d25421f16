//! Users and groups: names to ids, looked up when a step runs.
//!
//! Names are resolved through the C library (so NSS sources such as LDAP
//! count), at the time a step runs rather than when the steps file is read:
//! an earlier step may create the account.

use nix::unistd::{Group, User};

use crate::facility::FacilityError;

/// The uid of `name` (or `name` itself when it is a number).
pub fn resolve_user(name: &str) -> Result<u32, FacilityError> {
    if let Ok(uid) = name.parse() {
        return Ok(uid);
    }
    match User::from_name(name) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        Ok(None) => Err(FacilityError::permanent(format!(
            "there is no user `{name}` on this host; create it in an earlier step"
        ))),
        Err(err) => Err(FacilityError::new(format!(
            "cannot look up user `{name}`: {err}"
        ))),
    }
}

/// The gid of `name` (or `name` itself when it is a number).
pub fn resolve_group(name: &str) -> Result<u32, FacilityError> {
    if let Ok(gid) = name.parse() {
        return Ok(gid);
    }
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(FacilityError::permanent(format!(
            "there is no group `{name}` on this host; create it in an earlier step"
        ))),
        Err(err) => Err(FacilityError::new(format!(
            "cannot look up group `{name}`: {err}"
        ))),
    }
}
