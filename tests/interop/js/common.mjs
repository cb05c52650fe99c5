// Shared by the matrix-js-sdk interop scripts (run by tests/interop/test_js_sdk.py).
//
// Each script is `node <script>.mjs <homeserver_url>`: it prints one line per step on stdout,
// "OK" at the end, and exits 0; on a failure it prints the failing step, the error and the end
// of the SDK's own log on stderr and exits 1; after INTEROP_JS_TIMEOUT seconds (default 60) it
// gives up with "TIMEOUT" and exit code 2 instead of hanging.
//
// This module must be imported before matrix-js-sdk: the SDK's loggers bind the console
// methods when they are created, and we capture them here so that the SDK's chatter only
// shows up when it explains a failure (INTEROP_JS_VERBOSE=1 shows it all, live).

import { format } from "node:util";
import { randomBytes } from "node:crypto";

const VERBOSE = Boolean(process.env.INTEROP_JS_VERBOSE);
const TIMEOUT_S = Number(process.env.INTEROP_JS_TIMEOUT || 60);
const SDK_LOG = []; // the last lines the SDK logged
const SDK_LOG_MAX = 150;

for (const level of ["log", "debug", "info", "warn", "error", "trace"]) {
    console[level] = (...args) => {
        const line = `[sdk ${level}] ${format(...args)}`;
        if (VERBOSE) process.stderr.write(line + "\n");
        SDK_LOG.push(line.length > 2000 ? line.slice(0, 2000) + " ..." : line);
        if (SDK_LOG.length > SDK_LOG_MAX) SDK_LOG.shift();
    };
}

const started = Date.now();
let currentStep = "start-up";

/** Names what the script does next: shown as progress, and in a failure or timeout report. */
export function step(description) {
    currentStep = description;
    process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${description}\n`);
}

function dumpSdkLog() {
    if (!VERBOSE && SDK_LOG.length) {
        process.stderr.write(`--- last ${SDK_LOG.length} lines of matrix-js-sdk's log ---\n`);
        process.stderr.write(SDK_LOG.join("\n") + "\n");
    }
}

function describe(err) {
    let text = err && err.stack ? err.stack : String(err);
    // A MatrixError: the HTTP status and the server's JSON body say what was refused.
    if (err && err.httpStatus) text += `\nHTTP ${err.httpStatus} ${err.url || ""}\n${JSON.stringify(err.data)}`;
    return text;
}

/** Runs `main`, then exits: 0 on success, 1 on an error, 2 on the overall timeout. */
export function run(main) {
    const watchdog = setTimeout(() => {
        process.stderr.write(`TIMEOUT: no result after ${TIMEOUT_S}s; stuck at step: ${currentStep}\n`);
        dumpSdkLog();
        process.exit(2);
    }, TIMEOUT_S * 1000);
    main().then(
        () => {
            clearTimeout(watchdog);
            process.stdout.write("OK\n");
            // Exit now: stopped clients can still hold sockets and timers open.
            process.exit(0);
        },
        (err) => {
            clearTimeout(watchdog);
            process.stderr.write(`FAILED at step: ${currentStep}\n${describe(err)}\n`);
            dumpSdkLog();
            process.exit(1);
        },
    );
}

export function check(condition, message) {
    if (!condition) throw new Error(`check failed: ${message}`);
}

/**
 * Polls `probe` (sync or async) every 100 ms until it returns a truthy value, which it returns.
 * Gives up after `timeoutS` seconds with an error naming what was awaited.
 */
export async function until(what, probe, timeoutS = 30) {
    const deadline = Date.now() + timeoutS * 1000;
    for (;;) {
        const value = await probe();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutS}s waiting for: ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
}

export const PASSWORD = "correct horse battery staple";

/** The homeserver URL, from the command line. */
export function homeserverUrl() {
    const url = process.argv[2];
    if (!url) {
        process.stderr.write(`usage: node ${process.argv[1]} <homeserver_url>\n`);
        process.exit(64);
    }
    return url.replace(/\/+$/, "");
}

/**
 * Registers a fresh user the way a client does it (user-interactive auth: the first request
 * gets a 401 with the flows and a session, the second completes m.login.dummy), then logs in
 * with the password and returns a client for that login's device (not yet started).
 */
export async function registerAndLogin(sdk, baseUrl, label) {
    const username = `js_${label}_${randomBytes(4).toString("hex")}`;
    const anon = sdk.createClient({ baseUrl });
    step(`${label}: register ${username}`);
    const request = { username, password: PASSWORD, inhibit_login: true };
    let session;
    try {
        await anon.registerRequest(request);
        throw new Error("register without auth succeeded: expected a 401 user-interactive auth challenge");
    } catch (err) {
        if (err.httpStatus !== 401) throw err;
        const flows = (err.data && err.data.flows) || [];
        check(flows.some((f) => f.stages && f.stages.length === 1 && f.stages[0] === "m.login.dummy"),
            `register's 401 offers a single-stage m.login.dummy flow: ${JSON.stringify(err.data)}`);
        session = err.data.session;
    }
    const registered = await anon.registerRequest({ ...request, auth: { type: "m.login.dummy", session } });
    check(registered.user_id && registered.user_id.startsWith(`@${username}:`),
        `register returns the new user_id: ${JSON.stringify(registered)}`);

    step(`${label}: log in with the password`);
    const login = await anon.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: username },
        password: PASSWORD,
        initial_device_display_name: `matrix-js-sdk ${label}`,
    });
    check(login.user_id === registered.user_id && login.access_token && login.device_id,
        `login returns user_id, access_token and device_id: ${JSON.stringify(login)}`);
    return sdk.createClient({
        baseUrl,
        userId: login.user_id,
        accessToken: login.access_token,
        deviceId: login.device_id,
    });
}

/** Starts the client's sync loop and resolves once the first sync has been processed. */
export async function startSyncing(sdk, client, label) {
    step(`${label}: start syncing`);
    const ready = new Promise((resolve, reject) => {
        const onSync = (state, _prev, data) => {
            if (state === sdk.SyncState.Prepared || state === sdk.SyncState.Syncing) {
                client.off(sdk.ClientEvent.Sync, onSync);
                resolve();
            } else if (state === sdk.SyncState.Error) {
                client.off(sdk.ClientEvent.Sync, onSync);
                reject(new Error(`${label}: initial sync failed: ${describe(data && data.error)}`));
            }
        };
        client.on(sdk.ClientEvent.Sync, onSync);
    });
    await client.startClient({ initialSyncLimit: 20 });
    await ready;
}

/** The live-timeline event in `client`'s copy of the room for which `pred(event)` holds, if any. */
export function findEvent(client, roomId, pred) {
    const room = client.getRoom(roomId);
    if (!room) return undefined;
    return room.getLiveTimeline().getEvents().find(pred);
}

/** Creates a room as `alice`, invites `bob`, has bob join, and waits until both see him joined. */
export async function roomWithBoth(sdk, alice, bob, createOptions) {
    step("alice: create the room");
    const { room_id: roomId } = await alice.createRoom(createOptions);
    check(roomId && roomId.startsWith("!"), `createRoom returns a room_id: ${roomId}`);

    step("alice: invite bob");
    await alice.invite(roomId, bob.getUserId());
    step("bob: the invite arrives through /sync");
    await until("bob's client to show the room as an invite",
        () => bob.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite);

    step("bob: join");
    await bob.joinRoom(roomId);
    step("both: see bob joined");
    await until("bob's own client to show him joined",
        () => bob.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Join);
    await until("alice's client to show bob joined",
        () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === sdk.KnownMembership.Join);
    return roomId;
}

/** A logged-in client with matrix-js-sdk's Rust crypto (in-memory store: no IndexedDB in Node), syncing. */
export async function cryptoClient(sdk, baseUrl, label) {
    const client = await registerAndLogin(sdk, baseUrl, label);
    step(`${label}: initRustCrypto (in-memory store)`);
    await client.initRustCrypto({ useIndexedDB: false });
    await startSyncing(sdk, client, label);
    // The Rust crypto uploads the device's identity and one-time keys in the background; a
    // peer that queried before it was done would see no device to encrypt for.
    step(`${label}: wait for keys/query to return the device's keys`);
    const [userId, deviceId] = [client.getUserId(), client.getDeviceId()];
    await until(`keys/query to return ${userId}'s device ${deviceId}`, async () => {
        const resp = await client.downloadKeysForUsers([userId]);
        const keys = resp.device_keys?.[userId]?.[deviceId];
        return keys && keys.keys?.[`ed25519:${deviceId}`] && keys.keys?.[`curve25519:${deviceId}`];
    });
    return client;
}
