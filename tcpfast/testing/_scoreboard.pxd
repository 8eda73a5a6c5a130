# cython: language_level=3
"""The sender's SACK scoreboard of RFC 6675 §3-4 (IsLost, pipe, NextSeg) over the SACKed ranges,
plus HighRxt/RescueRxt: a reference kept for tests and benchmarks, not used by the stack (see
``_scoreboard.pyx``). The data itself stays in the connection's send ring; this only keeps
sequence numbers.
"""
from libc.stdint cimport uint8_t, uint32_t
from tcpfast._ranges cimport seq_ranges


# Sequence numbers here are half-open like SND.UNA/SND.NXT, so high_rxt and rescue_rxt hold ONE
# PAST the RFC's inclusive HighRxt / RescueRxt (RFC 6675 §2 names last bytes: HighACK = SND.UNA-1,
# HighData = SND.NXT-1). high_rxt == snd_una means "nothing retransmitted" (HighRxt = HighACK).
# What the caller (RFC 6675 §5) must do itself:
#   (3.1) before SetPipe for Limited Transmit, outside recovery:   sb.high_rxt = snd_una
#   (4.3) after retransmitting the first segment [snd_una, snd_una + len) on entering recovery:
#         sb.high_rxt = sb.rescue_rxt = snd_una + len
#   (C.2)/(4) are done by sb_next_seg / sb_next_lost (they move high_rxt, or rescue_rxt for (4)).
#   §5.1 after an RTO, to "expunge" SACK information (RFC 2018 §5 SHOULD): ranges_clear(&sb.sacked)
#   (and sb.high_rxt = snd_una for the new recovery; sb_init would also clear in_use).
ctypedef struct scoreboard:
    seq_ranges sacked              # SACKed bytes above SND.UNA (RFC 6675 §3 "SACKed")
    uint32_t high_rxt              # RFC 6675 HighRxt + 1 (see above)
    uint32_t rescue_rxt            # RFC 6675 RescueRxt + 1; "undefined" is snd_una - 1
    uint8_t in_use                 # SACK was negotiated (sb_init clears it; the caller sets it)

# Empty; high_rxt = snd_una, rescue_rxt "undefined" (snd_una - 1), in_use = 0.
cdef void sb_init(scoreboard* sb, uint32_t snd_una) noexcept nogil
# Record the SACK blocks of one ACK (first trims below ``snd_una`` like sb_advance). Each block is
# clipped to [snd_una, snd_nxt): blocks wholly at or below ``snd_una`` (D-SACK, RFC 2883), wholly
# at or beyond ``snd_nxt``, or empty/inverted are ignored. A block that would need a 17th range is
# dropped. Returns the number of bytes newly SACKed.
cdef uint32_t sb_update(scoreboard* sb, uint32_t snd_una, uint32_t snd_nxt, const uint32_t* left,
                        const uint32_t* right, int n) noexcept nogil
# SND.UNA advanced: forget what lies below it (and pull high_rxt/rescue_rxt up to it, which
# changes no RFC 6675 test but keeps them within a window of SND.UNA).
cdef void sb_advance(scoreboard* sb, uint32_t snd_una) noexcept nogil
# RFC 6675 §4 IsLost(SeqNum): DupThresh SACKed ranges, or more than (DupThresh-1)*smss SACKed
# bytes, lie above ``seq``. (For an unSACKed seq this is the same for the whole hole holding it.)
cdef bint sb_is_lost(const scoreboard* sb, uint32_t seq, uint32_t smss) noexcept nogil
# RFC 6675 §4 SetPipe: bytes in flight between ``snd_una`` and ``high_data`` (= SND.NXT), the
# RFC's per-octet sum computed exactly, per hole between SACKed ranges.
cdef uint32_t sb_pipe(const scoreboard* sb, uint32_t snd_una, uint32_t high_data,
                      uint32_t smss) noexcept nogil
# RFC 6675 §4 NextSeg: the next segment to retransmit, at most ``smss`` bytes and never reaching
# into SACKed data; returns 1 and sets seq/len, or 0. ``high_data`` is SND.NXT. Rule (2), new
# data, is the caller's (it knows the windows), and the RFC puts it between rule (1) and rules
# (3)/(4), hence two entry points:
#   sb_next_lost: rule (1) only (lost segment above HighRxt); moves high_rxt past it (C.2).
#   sb_next_seg:  rules (1), (3), (4) in that order; (1)/(3) move high_rxt past the segment (C.2),
#                 (4) (the rescue retransmission) sets rescue_rxt = high_data and leaves high_rxt.
# Step (C.1): if sb_next_lost(...): resend it / elif new data allowed: send it (rule 2) /
#             elif sb_next_seg(...): resend it (rules 3, 4) / else stop.
# (Without new data to send, sb_next_seg alone is the whole of NextSeg.)
cdef int sb_next_seg(scoreboard* sb, uint32_t snd_una, uint32_t high_data, uint32_t smss,
                     uint32_t* seq_out, uint32_t* len_out) noexcept nogil
cdef int sb_next_lost(scoreboard* sb, uint32_t snd_una, uint32_t high_data, uint32_t smss,
                      uint32_t* seq_out, uint32_t* len_out) noexcept nogil
