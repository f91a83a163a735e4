#!/bin/sh
# crewgate container entrypoint (Phala Cloud CVM or any Docker host).
#
#  1. check the environment and list everything that is missing or malformed, then stop;
#  2. on an empty data volume with S3 configured, restore the newest backup
#     (`crewgate restore`, when this build has it);
#  3. run `crewgate doctor` (advisory; CREWGATE_DOCTOR=strict makes a FAIL fatal, =off skips it);
#  4. `exec crewgate gateway`: the gateway replaces this shell, so it is PID 1 and gets SIGTERM.
#
# With arguments that are not options (`docker compose run --rm crewgate tokens list`), the
# arguments are run as a crewgate command instead, without the checks.
#
# Only POSIX sh builtins are used: the runtime image has a shell and nothing else.
set -eu

log() { printf 'entrypoint: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

if [ "$#" -gt 0 ]; then
	case "$1" in
	-*) ;;
	*) exec crewgate "$@" ;;
	esac
fi

# Variables without which a production gateway must not start.
REQUIRED_VARS="MASTER_KEY REDPILL_API_KEY PUBLIC_URL GOOGLE_CLIENT_ID GOOGLE_CLIENT_SECRET COMPANY_DOMAIN"
# S3 backup is all or nothing: if any S3_* variable is set, these must be too.
S3_VARS="S3_ENDPOINT S3_BUCKET S3_PREFIX S3_REGION S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY S3_PATH_STYLE"
S3_REQUIRED_VARS="S3_BUCKET S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY"

: "${CREWGATE_DATA_DIR:=/data}"
: "${CREWGATE_BIND:=0.0.0.0:18789}"
: "${CREWGATE_DOCTOR:=warn}"
export CREWGATE_DATA_DIR CREWGATE_BIND

# value NAME: prints the value of the variable NAME ("" when unset).
value() { eval "printf '%s' \"\${$1:-}\""; }

hint() {
	case "$1" in
	MASTER_KEY) echo "64 hex characters: openssl rand -hex 32 (keep a copy: it opens the store and the backups)" ;;
	REDPILL_API_KEY) echo "RedPill API key (rp_...) from https://redpill.ai" ;;
	PUBLIC_URL) echo "https://<app-id>-18789.<gateway-domain>; derived automatically when DSTACK_APP_ID and DSTACK_GATEWAY_DOMAIN are set" ;;
	GOOGLE_CLIENT_ID) echo "OAuth client id (...apps.googleusercontent.com) of a Google 'Web application' client" ;;
	GOOGLE_CLIENT_SECRET) echo "the secret of that Google OAuth client" ;;
	COMPANY_DOMAIN) echo "e-mail domain allowed to join, e.g. company.com" ;;
	S3_*) echo "needed because other S3_* variables are set (unset them all to run without backup)" ;;
	ADMIN_TOKEN) echo "must be cga_ followed by 48 hex characters: crewgate tokens generate admin" ;;
	*) echo "see secrets/.env.example" ;;
	esac
}

# On Phala the public URL follows from the app id and the gateway domain (apis.md §5.3).
if [ -z "${PUBLIC_URL:-}" ] && [ -n "${DSTACK_APP_ID:-}" ] && [ -n "${DSTACK_GATEWAY_DOMAIN:-}" ]; then
	PUBLIC_URL="https://${DSTACK_APP_ID}-${CREWGATE_PUBLIC_PORT:-18789}.${DSTACK_GATEWAY_DOMAIN}"
	export PUBLIC_URL
	log "PUBLIC_URL derived from dstack: $PUBLIC_URL"
fi

problems=""
add_problem() {
	problems="${problems}
  $1: $2"
}

for name in $REQUIRED_VARS; do
	[ -n "$(value "$name")" ] || add_problem "$name" "missing — $(hint "$name")"
done

if [ -n "${MASTER_KEY:-}" ]; then
	case "$MASTER_KEY" in
	*[!0-9a-fA-F]*) add_problem MASTER_KEY "invalid — $(hint MASTER_KEY)" ;;
	*) [ "${#MASTER_KEY}" -eq 64 ] || add_problem MASTER_KEY "invalid — $(hint MASTER_KEY)" ;;
	esac
fi

if [ -n "${ADMIN_TOKEN:-}" ]; then
	admin_hex=${ADMIN_TOKEN#cga_}
	case "$admin_hex" in
	"$ADMIN_TOKEN" | *[!0-9a-fA-F]*) add_problem ADMIN_TOKEN "invalid — $(hint ADMIN_TOKEN)" ;;
	*) [ "${#admin_hex}" -eq 48 ] || add_problem ADMIN_TOKEN "invalid — $(hint ADMIN_TOKEN)" ;;
	esac
fi

# Empty S3_* variables (compose passes `${S3_PREFIX:-}` as "") count as unset, so crewgate's own
# defaults apply.
s3_configured=""
for name in $S3_VARS; do
	if [ -n "$(value "$name")" ]; then
		s3_configured=yes
	else
		unset "$name"
	fi
done
if [ -n "$s3_configured" ]; then
	for name in $S3_REQUIRED_VARS; do
		[ -n "$(value "$name")" ] || add_problem "$name" "missing — $(hint "$name")"
	done
fi

if [ -n "${CREWGATE_CONFIG:-}" ] && [ ! -r "$CREWGATE_CONFIG" ]; then
	add_problem CREWGATE_CONFIG "file $CREWGATE_CONFIG not found or not readable"
fi
if [ -e "$CREWGATE_DATA_DIR" ] && [ ! -w "$CREWGATE_DATA_DIR" ]; then
	add_problem CREWGATE_DATA_DIR "$CREWGATE_DATA_DIR is not writable by this user (the image runs as uid 65532)"
fi

if [ -n "$problems" ]; then
	log "cannot start: these environment variables are missing or invalid:${problems}"
	die "set them (on Phala: phala deploy -e secrets/.env; see deploy/phala/README.md) and start again"
fi

if [ -z "$s3_configured" ]; then
	log "WARNING: S3 backup is not configured: the state lives only on this volume (a CVM disk can vanish). Set S3_BUCKET, S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY."
fi

# has_command NAME: whether this crewgate build lists the subcommand NAME in its help.
help_text=$(crewgate --help 2>&1) || die "cannot run crewgate: is it on PATH? (${help_text})"
has_command() {
	case "$help_text" in
	*"
  $1 "*) return 0 ;;
	*) return 1 ;;
	esac
}

if [ -n "$s3_configured" ] && [ ! -e "$CREWGATE_DATA_DIR/crewgate.db" ]; then
	if [ -n "${CREWGATE_SKIP_RESTORE:-}" ]; then
		log "CREWGATE_SKIP_RESTORE is set: starting with an empty store without looking for a backup"
	elif has_command restore; then
		log "empty data volume and S3 configured: restoring the newest backup into $CREWGATE_DATA_DIR"
		if output=$(crewgate restore --to "$CREWGATE_DATA_DIR" 2>&1); then
			printf '%s\n' "$output" >&2
			log "restore finished"
		else
			printf '%s\n' "$output" >&2
			case "$output" in
			*"no backups found"*) log "no backup in S3 yet: first start with an empty store" ;;
			*) die "restore from S3 failed (see above); refusing to start empty, which would begin a new backup generation. Fix the cause, or set CREWGATE_SKIP_RESTORE=1 to start empty on purpose." ;;
			esac
		fi
	else
		log "empty data volume and S3 configured, but this crewgate build has no 'restore' command: starting with an empty store"
	fi
fi

case "$CREWGATE_DOCTOR" in
off)
	log "doctor skipped (CREWGATE_DOCTOR=off)"
	;;
*)
	if ! has_command doctor; then
		log "this crewgate build has no 'doctor' command: checks skipped"
	elif crewgate doctor; then
		log "doctor: all checks passed"
	elif [ "$CREWGATE_DOCTOR" = strict ]; then
		die "doctor found problems (see above) and CREWGATE_DOCTOR=strict: not starting"
	else
		log "doctor found problems (see above); starting anyway (CREWGATE_DOCTOR=strict refuses to start)"
	fi
	;;
esac

log "starting the gateway on $CREWGATE_BIND"
exec crewgate gateway "$@"
