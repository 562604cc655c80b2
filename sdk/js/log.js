// Logging into the host's log, tagged with the plugin's name. Every world.
import wit from "orchd:plugin/log@0.1.0";

/** Writes `message` at `level` (`debug`, `info`, `warn`, `error`). */
export function log(level, message) {
  wit.log(level, String(message));
}
/** Writes `message` at debug level. */
export const debug = (message) => log("debug", message);
/** Writes `message` at info level. */
export const info = (message) => log("info", message);
/** Writes `message` at warn level. */
export const warn = (message) => log("warn", message);
/** Writes `message` at error level. */
export const error = (message) => log("error", message);
