// The C API's handles (include/xatm/xatm.h), for the parts of the library
// that build on them (the TX interface, tx.cc).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "core/config.h"
#include "core/transaction_manager.h"

struct xatm {
  std::unique_ptr<xtm::tm::TransactionManager> tm;
  std::string open_error;  // why xatm_open failed
  std::atomic<long> transactions{0};  // xatm_tx not freed yet: xatm_close refuses while any is
};

struct xatm_tx {
  xatm* owner = nullptr;
  std::unique_ptr<xtm::tm::Transaction> tx;
};

struct xatm_config {
  xtm::tm::TmConfig cfg;
  std::string error;
};
