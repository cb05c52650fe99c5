// End-to-end encryption through matrix-js-sdk's Rust crypto (initRustCrypto, in memory):
// two clients upload their device and one-time keys, share an encrypted room, and each
// decrypts the other's message. Exercises keys/upload, keys/query, keys/claim,
// sendToDevice (the olm-encrypted room key) and to-device delivery through /sync.
//
//   node e2ee.mjs <homeserver_url>

import { check, cryptoClient, homeserverUrl, roomWithBoth, run, step, until } from "./common.mjs";
import * as sdk from "matrix-js-sdk";

const MEGOLM = "m.megolm.v1.aes-sha2";

/**
 * Waits until `receiver` has decrypted `sender`'s encrypted message `body`; returns that event.
 * A room key can arrive after its message (the event first fails to decrypt, then is retried),
 * so only the timeout is a failure, reported with what the SDK made of the encrypted events.
 */
async function decrypted(receiver, sender, roomId, body, label) {
    const fromSender = () => (receiver.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [])
        .filter((e) => e.getSender() === sender.getUserId() && e.isEncrypted());
    let event;
    try {
        event = await until(`${label}: ${sender.getUserId()}'s encrypted message, decrypted`,
            () => fromSender().find((e) => !e.isDecryptionFailure() && e.getClearContent()?.body === body));
    } catch (err) {
        const seen = fromSender().map((e) => ({
            event_id: e.getId(), failure: e.isDecryptionFailure(), reason: e.decryptionFailureReason,
            pending: e.isBeingDecrypted(), content: e.getContent() }));
        throw new Error(`${err.message}\nencrypted events from the sender in ${label}'s timeline: ` +
            JSON.stringify(seen));
    }
    check(event.getWireType() === "m.room.encrypted" && event.getWireContent().algorithm === MEGOLM,
        `${label}: the event went over the wire as megolm m.room.encrypted: ${event.getWireType()} ` +
        `${JSON.stringify(event.getWireContent())}`);
    check(event.getType() === "m.room.message" && event.getClearContent().msgtype === "m.text",
        `${label}: the clear content is an m.text message: ${JSON.stringify(event.getClearContent())}`);
    check(!JSON.stringify(event.getWireContent()).includes(body), `${label}: the wire content has no clear text`);
    return event;
}

run(async () => {
    const baseUrl = homeserverUrl();
    const alice = await cryptoClient(sdk, baseUrl, "alice");
    const bob = await cryptoClient(sdk, baseUrl, "bob");

    const roomId = await roomWithBoth(sdk, alice, bob, {
        name: "js-sdk e2ee",
        visibility: sdk.Visibility.Private,
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: MEGOLM } }],
    });
    check(await alice.getCrypto().isEncryptionEnabledInRoom(roomId), "alice's client treats the room as encrypted");
    await until("bob's client to treat the room as encrypted",
        () => bob.getCrypto().isEncryptionEnabledInRoom(roomId));

    step("alice: send an encrypted message (keys/query, keys/claim, sendToDevice, send)");
    await alice.sendMessage(roomId, { msgtype: "m.text", body: "secret for bob" });
    step("bob: receives and decrypts it");
    const secret = await decrypted(bob, alice, roomId, "secret for bob", "bob");
    check(secret.getSender() === alice.getUserId(), "the sender is alice");

    step("bob: send an encrypted reply");
    await bob.sendMessage(roomId, { msgtype: "m.text", body: "secret for alice" });
    step("alice: receives and decrypts it");
    await decrypted(alice, bob, roomId, "secret for alice", "alice");

    step("stop both clients");
    alice.stopClient();
    bob.stopClient();
});
