// Cross-signing through matrix-js-sdk's Rust crypto: alice, who has no cross-signing keys yet,
// bootstraps them (keys/device_signing/upload, then keys/signatures/upload for her device).
// Since v1.11 (MSC3967) the first upload of cross-signing keys needs no user-interactive auth,
// so the request without auth must succeed. Then alice's client is cross-signing ready, and
// bob, who shares a room with her, sees her device signed by its owner (device_lists.changed
// in his /sync, then keys/query with her master and self-signing keys).
//
//   node cross_signing.mjs <homeserver_url>

import { check, cryptoClient, homeserverUrl, roomWithBoth, run, step, until } from "./common.mjs";
import * as sdk from "matrix-js-sdk";

run(async () => {
    const baseUrl = homeserverUrl();
    const alice = await cryptoClient(sdk, baseUrl, "alice");
    const bob = await cryptoClient(sdk, baseUrl, "bob");
    const [aliceId, aliceDevice] = [alice.getUserId(), alice.getDeviceId()];
    // Sharing an encrypted room is what makes bob's crypto track alice's devices (the SDK
    // tracks the members of encrypted rooms only) and hear of her key changes.
    await roomWithBoth(sdk, alice, bob, {
        name: "js-sdk cross-signing",
        visibility: sdk.Visibility.Private,
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });

    step("bob: sees alice's device, not yet cross-signed");
    const before = await until("bob's crypto to know alice's device",
        () => bob.getCrypto().getDeviceVerificationStatus(aliceId, aliceDevice));
    check(!before.signedByOwner, `before bootstrap, alice's device is not signed by her: ${JSON.stringify(before)}`);

    const aliceCrypto = alice.getCrypto();
    check(!(await aliceCrypto.isCrossSigningReady()), "before bootstrap, alice is not cross-signing ready");

    step("alice: bootstrapCrossSigning (first upload: no user-interactive auth)");
    const uiaCalls = [];
    await aliceCrypto.bootstrapCrossSigning({
        // matrix-js-sdk always routes the upload through this callback when one is given; a
        // client tries without auth first and only runs UIA on a 401. The server must accept
        // the first try.
        authUploadDeviceSigningKeys: async (makeRequest) => {
            uiaCalls.push("called");
            try {
                return await makeRequest(null);
            } catch (err) {
                if (err.httpStatus === 401) {
                    throw new Error("keys/device_signing/upload demanded user-interactive auth for a user " +
                        "with no cross-signing keys yet (v1.11/MSC3967: the first upload needs none): " +
                        JSON.stringify(err.data));
                }
                throw err;
            }
        },
    });
    check(uiaCalls.length === 1, `the upload went through the auth callback once, without auth: ${uiaCalls.length}`);

    step("alice: cross-signing is ready");
    const status = await aliceCrypto.getCrossSigningStatus();
    const cached = status.privateKeysCachedLocally;
    check(status.publicKeysOnDevice && cached.masterKey && cached.selfSigningKey && cached.userSigningKey,
        `getCrossSigningStatus: ${JSON.stringify(status)}`);
    check(await aliceCrypto.isCrossSigningReady(), "alice is cross-signing ready");
    const masterKey = await aliceCrypto.getCrossSigningKeyId(); // the master key by default
    check(masterKey, "alice has a master key id");
    // The SDK learns of its device's new signature from the server: device_lists.changed for
    // alice in her own /sync, then a keys/query.
    step("alice: sees her own device signed by her");
    await until("alice's client to see her device signed by her and cross-signing verified", async () => {
        const own = await aliceCrypto.getDeviceVerificationStatus(aliceId, aliceDevice);
        return own?.signedByOwner && own.crossSigningVerified;
    });

    step("server: keys/query returns alice's cross-signing keys and her device's signature");
    const query = await bob.downloadKeysForUsers([aliceId]);
    const master = query.master_keys?.[aliceId];
    const selfSigning = query.self_signing_keys?.[aliceId];
    check(master && Object.values(master.keys).includes(masterKey),
        `keys/query has alice's master key ${masterKey}: ${JSON.stringify(query.master_keys)}`);
    check(selfSigning && selfSigning.usage?.includes("self_signing"),
        `keys/query has alice's self-signing key: ${JSON.stringify(query.self_signing_keys)}`);
    check(!query.user_signing_keys?.[aliceId],
        `keys/query gives bob no user-signing key of alice (only her own): ${JSON.stringify(query.user_signing_keys)}`);
    const sskId = Object.keys(selfSigning.keys)[0];
    const deviceSigs = query.device_keys?.[aliceId]?.[aliceDevice]?.signatures?.[aliceId] ?? {};
    check(deviceSigs[sskId], `alice's device keys carry her self-signing signature ${sskId}: ` +
        JSON.stringify(query.device_keys?.[aliceId]?.[aliceDevice]));

    step("bob: sees alice's device signed by its owner (device_lists.changed, then keys/query)");
    const after = await until("bob's client to see alice's device as signed by her", async () => {
        const s = await bob.getCrypto().getDeviceVerificationStatus(aliceId, aliceDevice);
        return s?.signedByOwner ? s : null;
    });
    check(!after.crossSigningVerified, "bob has not verified alice, so her device is not cross-signing verified for him");
    const user = await bob.getCrypto().getUserVerificationStatus(aliceId);
    check(!user.isCrossSigningVerified(), "bob has not verified alice");

    step("stop both clients");
    alice.stopClient();
    bob.stopClient();
});
