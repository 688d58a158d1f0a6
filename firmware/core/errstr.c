#include "pifs.h"

const char *pifs_err_to_str(int err) {
  switch (err) {
  case PIFS_OK: return "OK";
  case PIFS_EIO: return "EIO (block device failed)";
  case PIFS_EINVAL: return "EINVAL (bad argument)";
  case PIFS_ENOENT: return "ENOENT (not found)";
  case PIFS_EEXIST: return "EEXIST (already exists)";
  case PIFS_ENOSPC: return "ENOSPC (no space left)";
  case PIFS_ENOMEM: return "ENOMEM (out of memory)";
  case PIFS_EBADHASH: return "EBADHASH (content does not match its id)";
  case PIFS_ECORRUPT: return "ECORRUPT (on-card structure damaged)";
  case PIFS_ENOTFAT32: return "ENOTFAT32 (no FAT32 volume)";
  case PIFS_EFAT1216: return "EFAT1216 (volume is FAT12/FAT16)";
  case PIFS_EEXFAT: return "EEXFAT (volume is exFAT)";
  case PIFS_EBADSIG: return "EBADSIG (no 0x55AA boot signature)";
  case PIFS_ESECTOR: return "ESECTOR (sector size is not 512)";
  case PIFS_EBPB: return "EBPB (inconsistent BPB)";
  case PIFS_EUNFORMATTED: return "EUNFORMATTED (card holds no pifs store)";
  case PIFS_EWRONGCLUSTER: return "EWRONGCLUSTER (store belongs to another cluster)";
  case PIFS_ECONFLICT: return "ECONFLICT (conditional operation lost)";
  case PIFS_ERANGE: return "ERANGE (out of range)";
  case PIFS_EBUSY: return "EBUSY (too many pending operations)";
  case PIFS_EPROTO: return "EPROTO (protocol violation)";
  case PIFS_ENOTDIR: return "ENOTDIR (not a directory)";
  default: return "unknown error";
  }
}
