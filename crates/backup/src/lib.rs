//! crewgate-backup
