// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

import {IInferenceVerifier} from "./IInferenceVerifier.sol";

/// @notice A place for dApps to post zkinfer inference proofs and read verified results.
/// The owner registers models (a verifier and the layout of its public instances); anyone
/// submits `(modelId, proof, instances)`; the registry calls the model's verifier and, only on
/// success, stores a record and emits `InferenceVerified`.
///
/// Duplicates: a record is keyed by the statement, `keccak256(modelId, instances)`. A statement
/// already recorded is refused with `AlreadyVerified(recordId)`: the first submitter keeps the
/// record, and a client that re-submits after a lost receipt reads the existing record instead
/// of paying twice for the same fact.
contract InferenceRegistry {
    uint16 public constant NONE = type(uint16).max;

    /// @notice How a model's public instances are laid out (indices into the instances).
    struct Layout {
        uint16 numInstances;
        /// Instance holding the model commitment (hashed params), or NONE.
        uint16 commitmentIndex;
        /// The input run: packed values or one Poseidon commitment; length 0 when private.
        uint16 inputStart;
        uint16 inputLength;
        /// The output run: packed values or one Poseidon commitment; length 0 when private.
        uint16 outputStart;
        uint16 outputLength;
    }

    struct Model {
        IInferenceVerifier verifier;
        /// The model commitment (hashed params) the proofs must carry, or a vk digest
        /// (fixed params) for reference; zero when none.
        bytes32 commitment;
        Layout layout;
        bool registered;
    }

    struct Record {
        bytes32 modelId;
        /// The input instance when the input run is one word (a commitment), else the keccak256
        /// of the input run; zero when the input is private.
        bytes32 input;
        /// The output instances as proven (decode with PackedInstances).
        uint256[] outputs;
        address submitter;
        uint64 blockNumber;
    }

    address public owner;
    mapping(bytes32 => Model) private models;
    mapping(bytes32 => Record) private records;
    uint256 public recordCount;

    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event ModelRegistered(bytes32 indexed modelId, address verifier, bytes32 commitment);
    event InferenceVerified(
        bytes32 indexed recordId, bytes32 indexed modelId, address indexed submitter, bytes32 input, uint256[] outputs
    );

    error NotOwner(address caller);
    error ZeroAddress();
    error ModelExists(bytes32 modelId);
    error UnknownModel(bytes32 modelId);
    error BadLayout(string reason);
    error WrongInstanceCount(uint256 expected, uint256 got);
    error ModelCommitmentMismatch(bytes32 expected, bytes32 got);
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

    function registerModel(bytes32 modelId, IInferenceVerifier verifier, bytes32 commitment, Layout calldata layout)
        external
        onlyOwner
    {
        if (models[modelId].registered) revert ModelExists(modelId);
        if (address(verifier) == address(0)) revert ZeroAddress();
        uint256 n = layout.numInstances;
        if (n == 0) revert BadLayout("no instances");
        if (layout.commitmentIndex != NONE) {
            if (layout.commitmentIndex >= n) revert BadLayout("commitment index out of range");
            if (commitment == bytes32(0)) revert BadLayout("commitment index without a commitment");
        }
        if (uint256(layout.inputStart) + layout.inputLength > n) revert BadLayout("input run out of range");
        if (uint256(layout.outputStart) + layout.outputLength > n) revert BadLayout("output run out of range");
        models[modelId] = Model({verifier: verifier, commitment: commitment, layout: layout, registered: true});
        emit ModelRegistered(modelId, address(verifier), commitment);
    }

    /// @notice The id of the record a statement gets.
    function recordIdOf(bytes32 modelId, uint256[] calldata instances) public pure returns (bytes32) {
        return keccak256(abi.encode(modelId, instances));
    }

    /// @notice Verifies `proof` for `instances` with the model's verifier and records the result.
    function submit(bytes32 modelId, bytes calldata proof, uint256[] calldata instances)
        external
        returns (bytes32 recordId)
    {
        Model storage model = models[modelId];
        if (!model.registered) revert UnknownModel(modelId);
        Layout memory layout = model.layout;
        if (instances.length != layout.numInstances) revert WrongInstanceCount(layout.numInstances, instances.length);
        if (layout.commitmentIndex != NONE && bytes32(instances[layout.commitmentIndex]) != model.commitment) {
            revert ModelCommitmentMismatch(model.commitment, bytes32(instances[layout.commitmentIndex]));
        }
        recordId = recordIdOf(modelId, instances);
        if (records[recordId].submitter != address(0)) revert AlreadyVerified(recordId);
        if (!verifierAccepts(model.verifier, instances, proof)) revert ProofRejected(modelId);

        Record storage record = records[recordId];
        record.modelId = modelId;
        record.input = inputOf(layout, instances);
        record.outputs = instances[layout.outputStart:layout.outputStart + layout.outputLength];
        record.submitter = msg.sender;
        record.blockNumber = uint64(block.number);
        recordCount += 1;
        emit InferenceVerified(recordId, modelId, msg.sender, record.input, record.outputs);
    }

    function verifierAccepts(IInferenceVerifier verifier, uint256[] calldata instances, bytes calldata proof)
        private
        view
        returns (bool)
    {
        try verifier.verifyProof(instances, proof) returns (bool ok) {
            return ok;
        } catch {
            return false;
        }
    }

    function inputOf(Layout memory layout, uint256[] calldata instances) private pure returns (bytes32) {
        if (layout.inputLength == 0) return bytes32(0);
        if (layout.inputLength == 1) return bytes32(instances[layout.inputStart]);
        return keccak256(abi.encodePacked(instances[layout.inputStart:layout.inputStart + layout.inputLength]));
    }

    function modelOf(bytes32 modelId) external view returns (Model memory) {
        if (!models[modelId].registered) revert UnknownModel(modelId);
        return models[modelId];
    }

    function recordOf(bytes32 recordId) external view returns (Record memory) {
        if (records[recordId].submitter == address(0)) revert UnknownRecord(recordId);
        return records[recordId];
    }
}
