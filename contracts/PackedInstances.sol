// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @notice Decodes zkinfer's packed public instances: a word holds `253 / bits` signed values
/// `v_j` as `sum_j (v_j + 2^(bits-1)) * 2^(bits*j)`; the fixed-point value is `v / 2^scale`.
library PackedInstances {
    error BadWidth(uint256 bits);
    error NotAPacking(uint256 wordIndex);

    /// @notice Values per word for a width.
    function perWord(uint256 bits) internal pure returns (uint256) {
        if (bits == 0 || bits > 64) revert BadWidth(bits);
        return 253 / bits;
    }

    /// @notice Unpacks `count` signed values of `bits` bits from `words`; reverts when a word
    /// holds bits beyond its last value (it is then not a packing zkinfer produced).
    function unpack(uint256[] memory words, uint256 count, uint256 bits) internal pure returns (int256[] memory values) {
        uint256 m = perWord(bits);
        values = new int256[](count);
        uint256 mask = (uint256(1) << bits) - 1;
        int256 offset = int256(uint256(1) << (bits - 1));
        uint256 n;
        for (uint256 w = 0; w < words.length; w++) {
            uint256 rest = words[w];
            for (uint256 j = 0; j < m && n < count; j++) {
                values[n++] = int256(rest & mask) - offset;
                rest >>= bits;
            }
            if (rest != 0) revert NotAPacking(w);
        }
        if (n != count) revert NotAPacking(words.length);
    }

    /// @notice Packs signed values as the circuit does (each must fit `bits` signed bits).
    function pack(int256[] memory values, uint256 bits) internal pure returns (uint256[] memory words) {
        uint256 m = perWord(bits);
        words = new uint256[]((values.length + m - 1) / m);
        int256 offset = int256(uint256(1) << (bits - 1));
        for (uint256 i = 0; i < values.length; i++) {
            int256 shifted = values[i] + offset;
            if (shifted < 0 || uint256(shifted) >> bits != 0) revert BadWidth(bits);
            words[i / m] |= uint256(shifted) << (bits * (i % m));
        }
    }
}
