// Chat through matrix-js-sdk: two clients register, log in and sync (startClient); alice
// creates a room, invites bob, bob joins; messages both ways, typing notifications and a read
// receipt, each seen by the other client through its own /sync loop.
//
//   node chat.mjs <homeserver_url>

import { check, findEvent, homeserverUrl, registerAndLogin, roomWithBoth, run, startSyncing, step, until }
    from "./common.mjs";
import * as sdk from "matrix-js-sdk";

run(async () => {
    const baseUrl = homeserverUrl();
    const alice = await registerAndLogin(sdk, baseUrl, "alice");
    const bob = await registerAndLogin(sdk, baseUrl, "bob");
    await startSyncing(sdk, alice, "alice");
    await startSyncing(sdk, bob, "bob");

    const roomId = await roomWithBoth(sdk, alice, bob,
        { name: "js-sdk chat", topic: "interop", visibility: sdk.Visibility.Private });
    check(bob.getRoom(roomId).name === "js-sdk chat", `bob sees the room's name: ${bob.getRoom(roomId).name}`);

    const text = (sender, body) => (e) =>
        e.getType() === "m.room.message" && e.getSender() === sender && e.getContent().body === body;

    step("alice: send a message");
    const { event_id: helloId } = await alice.sendMessage(roomId, { msgtype: "m.text", body: "hello bob" });
    step("bob: the message arrives through /sync");
    const hello = await until("alice's message in bob's timeline",
        () => findEvent(bob, roomId, text(alice.getUserId(), "hello bob")));
    check(hello.getId() === helloId, `bob sees the event_id alice got back: ${hello.getId()} vs ${helloId}`);

    step("bob: reply");
    await bob.sendMessage(roomId, { msgtype: "m.text", body: "hi alice" });
    step("alice: the reply arrives through /sync");
    await until("bob's reply in alice's timeline", () => findEvent(alice, roomId, text(bob.getUserId(), "hi alice")));

    step("alice: start typing");
    const typingSeen = [];
    bob.on(sdk.RoomMemberEvent.Typing, (_event, member) => {
        if (member.roomId === roomId && member.userId === alice.getUserId()) typingSeen.push(member.typing);
    });
    await alice.sendTyping(roomId, true, 30000);
    step("bob: sees alice typing (m.typing through /sync)");
    await until("bob's client to show alice typing",
        () => bob.getRoom(roomId).getMember(alice.getUserId()).typing === true);
    step("alice: stop typing");
    await alice.sendTyping(roomId, false, 0);
    step("bob: sees alice stop typing");
    await until("bob's client to show alice no longer typing",
        () => bob.getRoom(roomId).getMember(alice.getUserId()).typing === false);
    check(typingSeen.join() === "true,false", `RoomMember.typing events bob got for alice: ${typingSeen}`);

    // A message bob did not write: his own reply already counts as read up to it.
    step("alice: send a message for bob to read");
    const { event_id: readMeId } = await alice.sendMessage(roomId, { msgtype: "m.text", body: "read me" });
    const readMe = await until("the message in bob's timeline",
        () => findEvent(bob, roomId, text(alice.getUserId(), "read me")));

    const receiptEvents = [];
    alice.on(sdk.RoomEvent.Receipt, (event, room) => {
        if (room.roomId === roomId) receiptEvents.push(event.getContent());
    });
    step("bob: send a read receipt");
    await bob.sendReadReceipt(readMe, sdk.ReceiptType.Read);
    step("alice: sees bob's receipt (m.receipt through /sync)");
    const aliceEvent = await until("the message in alice's timeline",
        () => findEvent(alice, roomId, (e) => e.getId() === readMeId));
    const receipt = await until("bob's m.read receipt on the message in alice's client",
        () => alice.getRoom(roomId).getReceiptsForEvent(aliceEvent)
            .find((r) => r.userId === bob.getUserId() && r.type === sdk.ReceiptType.Read));
    check(receipt.data && typeof receipt.data.ts === "number", `the receipt has a ts: ${JSON.stringify(receipt)}`);
    check(receiptEvents.some((c) => c[readMeId]?.[sdk.ReceiptType.Read]?.[bob.getUserId()]),
        `a Room.receipt event for bob's receipt reached alice: ${JSON.stringify(receiptEvents)}`);
    check(alice.getRoom(roomId).getEventReadUpTo(bob.getUserId()) === readMeId,
        `alice's client has bob read up to the message: ${alice.getRoom(roomId).getEventReadUpTo(bob.getUserId())}`);

    step("stop both clients");
    alice.stopClient();
    bob.stopClient();
});
