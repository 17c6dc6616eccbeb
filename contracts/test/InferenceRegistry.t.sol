// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

import {InferenceRegistry} from "../InferenceRegistry.sol";
import {IInferenceVerifier, Halo2VerifierAdapter} from "../IInferenceVerifier.sol";
import {PackedInstances} from "../PackedInstances.sol";
import {MlpSmallFixture} from "./fixtures/MlpSmallFixture.sol";

/// The forge cheatcodes these tests use (forge-std is not vendored: no git dependencies).
interface Vm {
    function prank(address sender) external;
    function expectRevert(bytes calldata revertData) external;
    function expectRevert(bytes4 selector) external;
    function expectEmit(bool topic1, bool topic2, bool topic3, bool data) external;
    function roll(uint256 blockNumber) external;
    function assume(bool condition) external;
}

/// Calls the unpacking library from outside, so that its reverts can be expected.
contract Unpacker {
    function unpack(uint256[] memory words, uint256 count, uint256 bits) external pure returns (int256[] memory) {
        return PackedInstances.unpack(words, count, bits);
    }
}

contract InferenceRegistryTest {
    Vm private constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));
    bytes32 private constant MODEL = keccak256("mlp_small");
    address private constant ALICE = address(0xA11CE);

    InferenceRegistry private registry;
    IInferenceVerifier private verifier;

    event InferenceVerified(
        bytes32 indexed recordId, bytes32 indexed modelId, address indexed submitter, bytes32 input, uint256[] outputs
    );

    function setUp() public {
        registry = new InferenceRegistry();
        bytes memory code = MlpSmallFixture.VERIFIER_BYTECODE;
        address raw;
        assembly {
            raw := create(0, add(code, 0x20), mload(code))
        }
        require(raw != address(0), "verifier deployment failed");
        verifier = new Halo2VerifierAdapter(raw, 2_000_000);
        registry.registerModel(MODEL, verifier, commitment(), layout());
    }

    function commitment() private pure returns (bytes32) {
        return bytes32(MlpSmallFixture.instances()[MlpSmallFixture.COMMITMENT_INDEX]);
    }

    function layout() private pure returns (InferenceRegistry.Layout memory) {
        return InferenceRegistry.Layout({
            numInstances: uint16(MlpSmallFixture.NUM_INSTANCES),
            commitmentIndex: MlpSmallFixture.COMMITMENT_INDEX,
            inputStart: 0,
            inputLength: 0,
            outputStart: MlpSmallFixture.OUTPUT_START,
            outputLength: MlpSmallFixture.OUTPUT_LENGTH
        });
    }

    function assertEq(int256 a, int256 b, string memory what) private pure {
        require(a == b, what);
    }

    // ---- verifier -------------------------------------------------------------------------

    function testTheVerifierAcceptsTheRealProof() public view {
        require(verifier.verifyProof(MlpSmallFixture.instances(), MlpSmallFixture.PROOF), "valid proof rejected");
    }

    function testTheVerifierRejectsATamperedProof() public view {
        bytes memory proof = MlpSmallFixture.PROOF;
        for (uint256 i = 0; i < proof.length; i += 317) {
            bytes memory bad = bytes.concat(proof);
            bad[i] = bytes1(uint8(bad[i]) ^ 0x5a);
            require(!verifier.verifyProof(MlpSmallFixture.instances(), bad), "tampered proof accepted");
        }
    }

    function testTheVerifierRejectsWrongInstances() public view {
        for (uint256 i = 0; i < MlpSmallFixture.NUM_INSTANCES; i++) {
            uint256[] memory xs = MlpSmallFixture.instances();
            xs[i] ^= 1;
            require(!verifier.verifyProof(xs, MlpSmallFixture.PROOF), "wrong instance accepted");
        }
    }

    // ---- registration and access control ----------------------------------------------------

    function testOnlyTheOwnerRegisters() public {
        vm.prank(ALICE);
        vm.expectRevert(abi.encodeWithSelector(InferenceRegistry.NotOwner.selector, ALICE));
        registry.registerModel(keccak256("other"), verifier, bytes32(0), layout());
    }

    function testAModelIsRegisteredOnce() public {
        vm.expectRevert(abi.encodeWithSelector(InferenceRegistry.ModelExists.selector, MODEL));
        registry.registerModel(MODEL, verifier, commitment(), layout());
    }

    function testBadLayoutsAreRefused() public {
        InferenceRegistry.Layout memory l = layout();
        l.outputLength = 5;
        vm.expectRevert(abi.encodeWithSelector(InferenceRegistry.BadLayout.selector, "output run out of range"));
        registry.registerModel(keccak256("bad"), verifier, commitment(), l);
    }

    function testOwnershipTransfers() public {
        registry.transferOwnership(ALICE);
        require(registry.owner() == ALICE, "owner not transferred");
        vm.expectRevert(abi.encodeWithSelector(InferenceRegistry.NotOwner.selector, address(this)));
        registry.transferOwnership(address(this));
    }

    // ---- submission -----------------------------------------------------------------------

    function testAValidProofIsRecordedWithItsEvent() public {
        uint256[] memory xs = MlpSmallFixture.instances();
        bytes32 id = registry.recordIdOf(MODEL, xs);
        uint256[] memory outs = new uint256[](1);
        outs[0] = xs[MlpSmallFixture.OUTPUT_START];
        vm.roll(1234);
        vm.expectEmit(true, true, true, true);
        emit InferenceVerified(id, MODEL, ALICE, bytes32(0), outs);
        vm.prank(ALICE);
        require(registry.submit(MODEL, MlpSmallFixture.PROOF, xs) == id, "record id");

        InferenceRegistry.Record memory r = registry.recordOf(id);
        require(r.submitter == ALICE && r.modelId == MODEL && r.blockNumber == 1234, "record fields");
        require(registry.recordCount() == 1, "count");
        int256[] memory values =
            PackedInstances.unpack(r.outputs, MlpSmallFixture.OUTPUT_COUNT, MlpSmallFixture.OUTPUT_BITS);
        int256[] memory expected = MlpSmallFixture.outputs();
        for (uint256 i = 0; i < expected.length; i++) {
            assertEq(values[i], expected[i], "decoded output");
        }
    }

    function testADuplicateSubmissionIsRefused() public {
        uint256[] memory xs = MlpSmallFixture.instances();
        registry.submit(MODEL, MlpSmallFixture.PROOF, xs);
        vm.expectRevert(
            abi.encodeWithSelector(InferenceRegistry.AlreadyVerified.selector, registry.recordIdOf(MODEL, xs))
        );
        registry.submit(MODEL, MlpSmallFixture.PROOF, xs);
    }

    function testATamperedProofReverts() public {
        bytes memory bad = bytes.concat(MlpSmallFixture.PROOF);
        bad[100] = bytes1(uint8(bad[100]) ^ 1);
        vm.expectRevert(abi.encodeWithSelector(InferenceRegistry.ProofRejected.selector, MODEL));
        registry.submit(MODEL, bad, MlpSmallFixture.instances());
        require(registry.recordCount() == 0, "nothing recorded");
    }

    function testAWrongOutputReverts() public {
        uint256[] memory xs = MlpSmallFixture.instances();
        xs[MlpSmallFixture.OUTPUT_START] += 1;
        vm.expectRevert(abi.encodeWithSelector(InferenceRegistry.ProofRejected.selector, MODEL));
        registry.submit(MODEL, MlpSmallFixture.PROOF, xs);
    }

    function testAnotherModelCommitmentIsRefusedBeforeVerifying() public {
        uint256[] memory xs = MlpSmallFixture.instances();
        xs[MlpSmallFixture.COMMITMENT_INDEX] = 42;
        vm.expectRevert(
            abi.encodeWithSelector(InferenceRegistry.ModelCommitmentMismatch.selector, commitment(), bytes32(uint256(42)))
        );
        registry.submit(MODEL, MlpSmallFixture.PROOF, xs);
    }

    function testWrongInstanceCountAndUnknownModelsAreRefused() public {
        uint256[] memory one = new uint256[](1);
        vm.expectRevert(
            abi.encodeWithSelector(InferenceRegistry.WrongInstanceCount.selector, MlpSmallFixture.NUM_INSTANCES, 1)
        );
        registry.submit(MODEL, MlpSmallFixture.PROOF, one);
        vm.expectRevert(abi.encodeWithSelector(InferenceRegistry.UnknownModel.selector, keccak256("nope")));
        registry.submit(keccak256("nope"), MlpSmallFixture.PROOF, one);
    }

    // ---- instance decoding (fuzz) ---------------------------------------------------------

    function testFuzzPackingRoundTrips(int64 seed, uint8 bitsRaw, uint8 countRaw) public pure {
        uint256 bits = 2 + uint256(bitsRaw) % 63; // 2..=64
        uint256 count = uint256(countRaw) % 40;
        int256 half = int256(uint256(1) << (bits - 1));
        int256[] memory values = new int256[](count);
        for (uint256 i = 0; i < count; i++) {
            int256 r = int256(uint256(keccak256(abi.encode(seed, i))) % uint256(2 * half));
            values[i] = r - half;
        }
        uint256[] memory words = PackedInstances.pack(values, bits);
        int256[] memory back = PackedInstances.unpack(words, count, bits);
        for (uint256 i = 0; i < count; i++) {
            assertEq(back[i], values[i], "round trip");
        }
    }

    function testFuzzAWordWithStrayHighBitsIsNotAPacking(uint8 bitsRaw, uint8 shiftRaw) public {
        uint256 bits = 2 + uint256(bitsRaw) % 63;
        uint256 m = 253 / bits;
        uint256 used = m * bits;
        uint256 shift = used + uint256(shiftRaw) % (256 - used);
        uint256[] memory words = new uint256[](1);
        words[0] = uint256(1) << shift;
        Unpacker u = new Unpacker();
        vm.expectRevert(abi.encodeWithSelector(PackedInstances.NotAPacking.selector, 0));
        u.unpack(words, m, bits);
    }

    function testTheFixtureOutputsDecode() public pure {
        uint256[] memory xs = MlpSmallFixture.instances();
        uint256[] memory run = new uint256[](1);
        run[0] = xs[MlpSmallFixture.OUTPUT_START];
        int256[] memory values = PackedInstances.unpack(run, MlpSmallFixture.OUTPUT_COUNT, MlpSmallFixture.OUTPUT_BITS);
        require(values.length == 8 && values[6] == MlpSmallFixture.outputs()[6], "fixture output");
    }
}
