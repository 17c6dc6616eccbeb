// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

import {IInferenceVerifier, IHalo2SharedVerifier} from "./IInferenceVerifier.sol";

/// @notice A place for dApps to post zkinfer inference proofs and read verified results.
/// The owner registers models (a verifier of their own, or zkinfer's shared verifier with the
/// model's verifying key; how its proofs are tied to the model's weights; the layout of its
/// public instances); anyone submits `(modelId, proof, instances)`; the
/// registry checks that the instances are canonical field elements and carry the model's
/// weights, calls the model's verifier and, only on success, stores a record and emits
/// `InferenceVerified`.
///
/// What a record means depends on the model's `weights`: `Fixed` (the weights are constants of
/// the verifier) and `Instances` (public weights, or their Poseidon commitment, are instances
/// checked against the registered binding) say "this model gave these outputs"; `Unbound`
/// (private weights, registered only when the owner asks explicitly) says only "some weights of
/// this architecture gave these outputs".
///
/// Duplicates: a record is keyed by the statement, `keccak256(modelId, instances)`. A statement
/// already recorded is refused with `AlreadyVerified(recordId)`: the first submitter keeps the
/// record, and a client that re-submits after a lost receipt reads the existing record instead
/// of paying twice for the same fact.
contract InferenceRegistry {
    uint16 public constant NONE = type(uint16).max;
    /// @notice BN254's scalar field modulus: every instance must be below it. The verifiers
    /// reduce instances modulo it, so `x` and `x + MODULUS` verify alike; the registry keys
    /// records on the words, so it accepts only the canonical one.
    uint256 public constant MODULUS = 21888242871839275222246405745257275088548364400416034343698204186575808495617;

    /// @notice How a model's proofs are tied to its weights.
    enum Weights {
        /// Constants of the circuit: the verifier itself binds them.
        Fixed,
        /// Public instances (public weights, or their commitment) that must hash to `binding`.
        Instances,
        /// Not bound: private weights. Registered only on the owner's explicit request.
        Unbound
    }

    /// @notice How a model's public instances are laid out (indices into the instances). An
    /// application proof has one inference; an aggregated proof one per aggregated proof.
    struct Layout {
        uint16 numInstances;
        /// The instances that tie a proof to the model's weights: their words, in this order,
        /// hash (keccak256 of the 32-byte words) to the model's binding.
        uint16[] bound;
        /// Per inference: its input run (packed values or one Poseidon commitment; length 0 when
        /// private) and its output run.
        uint16[] inputStart;
        uint16[] inputLength;
        uint16[] outputStart;
        uint16[] outputLength;
        /// Instances that bind a proof to its submitter, this chain and this registry (proofs of
        /// models made with `--bind-submitter`): each must be `submitterWord(msg.sender)`.
        uint16[] submitter;
    }

    struct Model {
        /// The model's verifier (`IInferenceVerifier`), or the shared verifier
        /// (`IHalo2SharedVerifier`) when `key` is set.
        address verifier;
        Weights weights;
        /// keccak256 of the bound words a proof of this model carries; zero when none.
        bytes32 binding;
        Layout layout;
        bool registered;
        /// The model's verifying key, a data contract the shared verifier reads; zero for a
        /// verifier of its own.
        address key;
        /// Gas one verification by the shared verifier may use.
        uint64 gasCap;
    }

    /// A model as stored: the fields of `Model` in four slots, its layout packed as 2-byte
    /// big-endian numbers (see `packLayout`), so that registering one costs a few storage words
    /// whatever its layout, and a submission reads them in one or two.
    struct StoredModel {
        address verifier;
        Weights weights;
        bool registered;
        uint64 gasCap;
        address key;
        bytes32 binding;
        bytes layout;
    }

    struct Record {
        bytes32 modelId;
        /// Per inference: the input instance when its run is one word (a commitment), else the
        /// keccak256 of the run; zero when the input is private.
        bytes32[] inputs;
        /// Every inference's output instances as proven, run after run (decode with
        /// PackedInstances and the model's layout).
        uint256[] outputs;
        address submitter;
        uint64 blockNumber;
    }

    address public owner;
    mapping(bytes32 => StoredModel) private models;
    mapping(bytes32 => Record) private records;
    uint256 public recordCount;

    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event ModelRegistered(bytes32 indexed modelId, address verifier, address key, Weights weights, bytes32 binding);
    event InferenceVerified(
        bytes32 indexed recordId,
        bytes32 indexed modelId,
        address indexed submitter,
        bytes32[] inputs,
        uint256[] outputs
    );

    error NotOwner(address caller);
    error ZeroAddress();
    error NotAContract(address account);
    error ZeroGasCap();
    error ModelExists(bytes32 modelId);
    error UnknownModel(bytes32 modelId);
    error BadLayout(string reason);
    error WrongInstanceCount(uint256 expected, uint256 got);
    error NonCanonicalInstance(uint256 index, uint256 value);
    error OtherWeights(bytes32 expected, bytes32 got);
    error WrongSubmitter(address submitter, uint256 expected, uint256 got);
    error ProofRejected(bytes32 modelId);
    error AlreadyVerified(bytes32 recordId);
    error UnknownRecord(bytes32 recordId);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor() {
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// @notice Registers a model. `weights` says how its proofs are tied to its weights:
    /// `Instances` needs the bound instances and their binding, `Fixed` and `Unbound` neither.
    function registerModel(
        bytes32 modelId,
        IInferenceVerifier verifier,
        Weights weights,
        bytes32 binding,
        Layout calldata layout
    ) external onlyOwner {
        if (address(verifier) == address(0)) revert ZeroAddress();
        register(modelId, address(verifier), address(0), 0, weights, binding, layout);
    }

    /// @notice Registers a model verified by zkinfer's shared verifier (`Halo2SharedVerifier`,
    /// deployed once per chain) against the model's verifying key `key` (its data contract),
    /// with at most `gasCap` gas per verification.
    function registerModelWithKey(
        bytes32 modelId,
        address sharedVerifier,
        address key,
        uint64 gasCap,
        Weights weights,
        bytes32 binding,
        Layout calldata layout
    ) external onlyOwner {
        if (sharedVerifier == address(0) || key == address(0)) revert ZeroAddress();
        if (sharedVerifier.code.length == 0) revert NotAContract(sharedVerifier);
        if (key.code.length == 0) revert NotAContract(key);
        if (gasCap == 0) revert ZeroGasCap();
        register(modelId, sharedVerifier, key, gasCap, weights, binding, layout);
    }

    function register(
        bytes32 modelId,
        address verifier,
        address key,
        uint64 gasCap,
        Weights weights,
        bytes32 binding,
        Layout calldata layout
    ) private {
        if (models[modelId].registered) revert ModelExists(modelId);
        checkLayout(weights, binding, layout);
        StoredModel storage model = models[modelId];
        model.verifier = verifier;
        model.key = key;
        model.gasCap = gasCap;
        model.weights = weights;
        model.binding = binding;
        model.layout = packLayout(layout);
        model.registered = true;
        emit ModelRegistered(modelId, verifier, key, weights, binding);
    }

    function checkLayout(Weights weights, bytes32 binding, Layout calldata layout) private pure {
        uint256 n = layout.numInstances;
        if (n == 0) revert BadLayout("no instances");
        if (weights == Weights.Instances) {
            if (layout.bound.length == 0) revert BadLayout("weights bound by instances, but no bound instance");
            if (binding == bytes32(0)) revert BadLayout("bound instances without a binding");
        } else if (layout.bound.length != 0 || binding != bytes32(0)) {
            revert BadLayout("bound instances for weights not bound by instances");
        }
        for (uint256 i = 0; i < layout.bound.length; i++) {
            if (layout.bound[i] >= n) revert BadLayout("bound instance out of range");
        }
        for (uint256 i = 0; i < layout.submitter.length; i++) {
            if (layout.submitter[i] >= n) revert BadLayout("submitter instance out of range");
        }
        // Each count is stored in 2 bytes (packLayout).
        if (layout.bound.length > n || layout.submitter.length > n) revert BadLayout("more indices than instances");
        uint256 inferences = layout.inputStart.length;
        if (inferences > n) revert BadLayout("more inferences than instances");
        if (
            layout.inputLength.length != inferences || layout.outputStart.length != inferences
                || layout.outputLength.length != inferences
        ) revert BadLayout("runs of different counts");
        for (uint256 i = 0; i < inferences; i++) {
            if (uint256(layout.inputStart[i]) + layout.inputLength[i] > n) revert BadLayout("input run out of range");
            if (uint256(layout.outputStart[i]) + layout.outputLength[i] > n) {
                revert BadLayout("output run out of range");
            }
        }
    }

    /// @notice The id of the record a statement gets.
    function recordIdOf(bytes32 modelId, uint256[] calldata instances) public pure returns (bytes32) {
        return keccak256(abi.encode(modelId, instances));
    }

    /// @notice The word a proof bound to `submitter` carries for this chain and this registry:
    /// keccak256(chain id, registry, submitter), shifted right by 8 bits to fit the field.
    function submitterWord(address submitter) public view returns (uint256) {
        return uint256(keccak256(abi.encode(block.chainid, address(this), submitter))) >> 8;
    }

    /// @notice keccak256 of the instances at `bound`, in order: what a model's binding is.
    function bindingOf(uint16[] memory bound, uint256[] calldata instances) public pure returns (bytes32) {
        uint256[] memory words = new uint256[](bound.length);
        for (uint256 i = 0; i < bound.length; i++) {
            words[i] = instances[bound[i]];
        }
        return keccak256(abi.encodePacked(words));
    }

    /// @notice Verifies `proof` for `instances` with the model's verifier and records the result.
    function submit(bytes32 modelId, bytes calldata proof, uint256[] calldata instances)
        external
        returns (bytes32 recordId)
    {
        StoredModel storage model = models[modelId];
        if (!model.registered) revert UnknownModel(modelId);
        Layout memory layout = unpackLayout(model.layout);
        if (instances.length != layout.numInstances) revert WrongInstanceCount(layout.numInstances, instances.length);
        for (uint256 i = 0; i < instances.length; i++) {
            if (instances[i] >= MODULUS) revert NonCanonicalInstance(i, instances[i]);
        }
        if (layout.bound.length != 0) {
            bytes32 got = bindingOf(layout.bound, instances);
            if (got != model.binding) revert OtherWeights(model.binding, got);
        }
        if (layout.submitter.length != 0) {
            uint256 expected = submitterWord(msg.sender);
            for (uint256 i = 0; i < layout.submitter.length; i++) {
                uint256 got = instances[layout.submitter[i]];
                if (got != expected) revert WrongSubmitter(msg.sender, expected, got);
            }
        }
        recordId = recordIdOf(modelId, instances);
        if (records[recordId].submitter != address(0)) revert AlreadyVerified(recordId);
        if (!verifierAccepts(model, instances, proof)) revert ProofRejected(modelId);

        Record storage record = records[recordId];
        record.modelId = modelId;
        for (uint256 i = 0; i < layout.inputStart.length; i++) {
            record.inputs.push(inputOf(layout.inputStart[i], layout.inputLength[i], instances));
            uint256 start = layout.outputStart[i];
            for (uint256 j = start; j < start + layout.outputLength[i]; j++) {
                record.outputs.push(instances[j]);
            }
        }
        record.submitter = msg.sender;
        record.blockNumber = uint64(block.number);
        recordCount += 1;
        emit InferenceVerified(recordId, modelId, msg.sender, record.inputs, record.outputs);
    }

    function verifierAccepts(StoredModel storage model, uint256[] calldata instances, bytes calldata proof)
        private
        view
        returns (bool)
    {
        address key = model.key;
        if (key == address(0)) {
            try IInferenceVerifier(model.verifier).verifyProof(instances, proof) returns (bool accepted) {
                return accepted;
            } catch {
                return false;
            }
        }
        (bool ok, bytes memory answer) = model.verifier.staticcall{gas: model.gasCap}(
            abi.encodeCall(IHalo2SharedVerifier.verifyProof, (key, instances, proof))
        );
        return ok && answer.length == 32 && uint256(bytes32(answer)) == 1;
    }

    function inputOf(uint256 start, uint256 length, uint256[] calldata instances) private pure returns (bytes32) {
        if (length == 0) return bytes32(0);
        if (length == 1) return bytes32(instances[start]);
        return keccak256(abi.encodePacked(instances[start:start + length]));
    }

    function modelOf(bytes32 modelId) external view returns (Model memory) {
        StoredModel storage model = models[modelId];
        if (!model.registered) revert UnknownModel(modelId);
        return Model({
            verifier: model.verifier,
            weights: model.weights,
            binding: model.binding,
            layout: unpackLayout(model.layout),
            registered: true,
            key: model.key,
            gasCap: model.gasCap
        });
    }

    /// The layout as stored: numInstances, the bound count and indices, the inference count
    /// and each inference's (inputStart, inputLength, outputStart, outputLength), the submitter
    /// count and indices; each a 2-byte big-endian number (checkLayout keeps the counts within
    /// numInstances).
    function packLayout(Layout calldata layout) private pure returns (bytes memory packed) {
        uint256 inferences = layout.inputStart.length;
        packed = new bytes(2 * (4 + layout.bound.length + 4 * inferences + layout.submitter.length));
        uint256 at = put(packed, 0, layout.numInstances);
        at = put(packed, at, layout.bound.length);
        for (uint256 i = 0; i < layout.bound.length; i++) {
            at = put(packed, at, layout.bound[i]);
        }
        at = put(packed, at, inferences);
        for (uint256 i = 0; i < inferences; i++) {
            at = put(packed, at, layout.inputStart[i]);
            at = put(packed, at, layout.inputLength[i]);
            at = put(packed, at, layout.outputStart[i]);
            at = put(packed, at, layout.outputLength[i]);
        }
        at = put(packed, at, layout.submitter.length);
        for (uint256 i = 0; i < layout.submitter.length; i++) {
            at = put(packed, at, layout.submitter[i]);
        }
    }

    function unpackLayout(bytes memory packed) private pure returns (Layout memory layout) {
        layout.numInstances = get(packed, 0);
        uint256 at = 2;
        (layout.bound, at) = getAll(packed, at);
        uint256 inferences = get(packed, at);
        at += 2;
        layout.inputStart = new uint16[](inferences);
        layout.inputLength = new uint16[](inferences);
        layout.outputStart = new uint16[](inferences);
        layout.outputLength = new uint16[](inferences);
        for (uint256 i = 0; i < inferences; i++) {
            layout.inputStart[i] = get(packed, at);
            layout.inputLength[i] = get(packed, at + 2);
            layout.outputStart[i] = get(packed, at + 4);
            layout.outputLength[i] = get(packed, at + 6);
            at += 8;
        }
        (layout.submitter,) = getAll(packed, at);
    }

    /// Writes `value` (below 2^16) at byte `at`; returns the next byte.
    function put(bytes memory packed, uint256 at, uint256 value) private pure returns (uint256) {
        packed[at] = bytes1(uint8(value >> 8));
        packed[at + 1] = bytes1(uint8(value));
        return at + 2;
    }

    function get(bytes memory packed, uint256 at) private pure returns (uint16) {
        return (uint16(uint8(packed[at])) << 8) | uint8(packed[at + 1]);
    }

    /// A count at byte `at` and that many numbers after it; returns them and the next byte.
    function getAll(bytes memory packed, uint256 at) private pure returns (uint16[] memory values, uint256 next) {
        values = new uint16[](get(packed, at));
        for (uint256 i = 0; i < values.length; i++) {
            values[i] = get(packed, at + 2 + 2 * i);
        }
        next = at + 2 + 2 * values.length;
    }

    function recordOf(bytes32 recordId) external view returns (Record memory) {
        if (records[recordId].submitter == address(0)) revert UnknownRecord(recordId);
        return records[recordId];
    }
}
