/* ModelInfer of the Open Inference Protocol: one BYTES input "text_input" with the prompt, one
   BYTES output "text_output" with the generated text, sampling and the adapter as request
   parameters. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asu_log.h"
#include "grpc_service.pb-c.h"
#include "oip.h"
#include "utf8.h"

typedef Inference__ModelInferRequest infer_request;
typedef Inference__ModelInferRequest__InferInputTensor input_tensor;
typedef Inference__InferParameter infer_param;

/* ---- Reading the request ---- */

/* Reads the parameter as a number; false when it is not one. */
static bool param_number(const infer_param *p, double *out) {
  switch (p->parameter_choice_case) {
  case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM: *out = (double)p->int64_param; return true;
  case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM: *out = (double)p->uint64_param; return true;
  case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_DOUBLE_PARAM: *out = p->double_param; return true;
  default: return false;
  }
}

static bool param_whole(const infer_param *p, uint64_t *out) {
  if (p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM) {
    *out = p->uint64_param;
    return true;
  }
  if (p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM &&
      p->int64_param >= 0) {
    *out = (uint64_t)p->int64_param;
    return true;
  }
  return false;
}

/* Applies the request parameters to g. Returns 1, or 0 after rejecting the call. */
static int read_params(asu_rpc_call *c, const infer_request *req, asu_generation_request *g) {
  for (size_t i = 0; i < req->n_parameters; i++) {
    const char *key = req->parameters[i]->key;
    const infer_param *p = req->parameters[i]->value;
    double num = 0;
    uint64_t whole = 0;
    bool ok = p != NULL;
    if (!ok) {
    } else if (!strcmp(key, "max_tokens") || !strcmp(key, "seed")) {
      if (p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM &&
          p->int64_param < 0)
        return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "parameter \"%s\" must be >= 0, got "
                          "%lld", key, (long long)p->int64_param);
      ok = param_whole(p, &whole);
      if (!strcmp(key, "seed"))
        g->seed = whole;
      else
        g->max_tokens = whole > UINT32_MAX ? UINT32_MAX : (uint32_t)whole;
    } else if (!strcmp(key, "temperature")) {
      ok = param_number(p, &num);
      g->temperature = (float)num;
    } else if (!strcmp(key, "top_p")) {
      ok = param_number(p, &num);
      g->top_p = (float)num;
    } else if (!strcmp(key, "adapter")) {
      ok = p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM;
      if (ok) g->adapter = p->string_param;
    } else {
      return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "unknown parameter \"%.80s\"; the "
                        "parameters are max_tokens, temperature, top_p, seed and adapter", key);
    }
    if (!ok)
      return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT,
                        "parameter \"%.80s\" has the wrong type: max_tokens and seed take a "
                        "whole number >= 0, temperature and top_p a number, adapter a string",
                        key);
  }
  return 1;
}

/* Finds the prompt in the one input, from its contents or from raw_input_contents. */
static int read_prompt(asu_rpc_call *c, const infer_request *req, asu_generation_request *g) {
  if (req->n_inputs != 1 || strcmp(req->inputs[0]->name, ASU_OIP_INPUT))
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "the model takes one input, a BYTES "
                      "tensor \"%s\" of shape [1]; the request has %zu input%s%s%.80s",
                      ASU_OIP_INPUT, req->n_inputs, req->n_inputs == 1 ? "" : "s",
                      req->n_inputs ? ", the first named " : "",
                      req->n_inputs ? req->inputs[0]->name : "");
  const input_tensor *t = req->inputs[0];
  int64_t elements = 1;
  char shape[96] = "[";
  for (size_t i = 0; i < t->n_shape; i++) {
    elements = t->shape[i] >= 0 ? elements * t->shape[i] : -1;
    size_t used = strlen(shape);
    snprintf(shape + used, sizeof shape - used, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  }
  size_t used = strlen(shape);
  snprintf(shape + used, sizeof shape - used, "]");
  if (strcmp(t->datatype, "BYTES") || elements != 1)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "input \"%s\" must be BYTES of one "
                      "element (shape [1]), got %.20s of shape %s", ASU_OIP_INPUT, t->datatype,
                      shape);
  if (req->n_raw_input_contents > 0) {
    const ProtobufCBinaryData *raw = &req->raw_input_contents[0];
    uint32_t len = 0;
    if (req->n_raw_input_contents != 1 || t->contents || raw->len < 4 ||
        (memcpy(&len, raw->data, 4), (size_t)len != raw->len - 4))
      return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "raw_input_contents must hold one "
                        "element, a 4-byte little-endian length and that many bytes, and "
                        "contents must then be empty");
    g->prompt = (const char *)raw->data + 4;
    g->prompt_len = len;
    return 1;
  }
  if (!t->contents || t->contents->n_bytes_contents != 1)
    return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "input \"%s\" must hold its one element "
                      "in contents.bytes_contents or in raw_input_contents", ASU_OIP_INPUT);
  g->prompt = (const char *)t->contents->bytes_contents[0].data;
  g->prompt_len = t->contents->bytes_contents[0].len;
  return 1;
}

static int check_outputs(asu_rpc_call *c, const infer_request *req) {
  for (size_t i = 0; i < req->n_outputs; i++)
    if (strcmp(req->outputs[i]->name, ASU_OIP_OUTPUT))
      return asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "unknown output \"%.80s\"; the model "
                        "has one output, \"%s\"", req->outputs[i]->name, ASU_OIP_OUTPUT);
  return 1;
}

/* ---- Generating ---- */

typedef struct text_sink {
  asu_rpc_call *call;
  char *text;
  size_t len, cap;
  uint32_t tokens;
  bool client_gone, no_memory;
} text_sink;

static int append_piece(void *user, int32_t token, const char *text, size_t len) {
  text_sink *t = user;
  t->tokens++;
  if (asu_rpc_cancelled(t->call)) {
    t->client_gone = true;
    return 1;
  }
  if (t->len + len + 5 > t->cap) {
    size_t cap = 2 * (t->len + len + 5);
    char *grown = realloc(t->text, cap);
    if (!grown) {
      t->no_memory = true;
      return 1;
    }
    t->text = grown;
    t->cap = cap;
  }
  memcpy(t->text + 4 + t->len, text, len); /* after room for the raw length prefix */
  t->len += len;
  return 0;
}

static Inference__InferParameter *int_param(Inference__InferParameter *p, int64_t v) {
  inference__infer_parameter__init(p);
  p->parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
  p->int64_param = v;
  return p;
}

/* Sends the text, which starts after 4 bytes of room for the raw length prefix. */
static void send_result(asu_rpc_call *c, const infer_request *req, const asu_adapter_info *info,
                        char *text, size_t text_len, uint32_t tokens, bool raw) {
  char version[16];
  snprintf(version, sizeof version, "%u", info->name[0] ? info->version : 1u);
  uint32_t len = (uint32_t)text_len;
  memcpy(text, &len, 4);
  ProtobufCBinaryData element = {text_len, (uint8_t *)text + 4};
  ProtobufCBinaryData raw_element = {text_len + 4, (uint8_t *)text};
  Inference__InferTensorContents contents = INFERENCE__INFER_TENSOR_CONTENTS__INIT;
  contents.n_bytes_contents = 1;
  contents.bytes_contents = &element;
  int64_t shape[] = {1};
  Inference__ModelInferResponse__InferOutputTensor out =
      INFERENCE__MODEL_INFER_RESPONSE__INFER_OUTPUT_TENSOR__INIT;
  out.name = ASU_OIP_OUTPUT;
  out.datatype = "BYTES";
  out.n_shape = 1;
  out.shape = shape;
  if (!raw) out.contents = &contents;
  Inference__ModelInferResponse__InferOutputTensor *outs[] = {&out};

  Inference__InferParameter adapter = INFERENCE__INFER_PARAMETER__INIT, values[2];
  adapter.parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM;
  adapter.string_param = (char *)info->name;
  Inference__ModelInferResponse__ParametersEntry entries[3], *params[3];
  const char *keys[] = {"adapter", "adapter_version", "completion_tokens"};
  Inference__InferParameter *vals[] = {&adapter, int_param(&values[0], info->version),
                                       int_param(&values[1], tokens)};
  for (int i = 0; i < 3; i++) {
    inference__model_infer_response__parameters_entry__init(&entries[i]);
    entries[i].key = (char *)keys[i];
    entries[i].value = vals[i];
    params[i] = &entries[i];
  }
  Inference__ModelInferResponse r = INFERENCE__MODEL_INFER_RESPONSE__INIT;
  r.model_name = req->model_name;
  r.model_version = version;
  r.id = req->id;
  r.n_parameters = 3;
  r.parameters = params;
  r.n_outputs = 1;
  r.outputs = outs;
  if (raw) {
    r.n_raw_output_contents = 1;
    r.raw_output_contents = &raw_element;
  }
  asu_rpc_finish(c, &r.base, GRPC_STATUS_OK, "");
}

/* Sends the generated bytes as UTF-8, with invalid bytes replaced by U+FFFD as Generate
   sends them: a piece may end inside a character, and a sampled token may not complete it. */
static void send_utf8(asu_rpc_call *c, const infer_request *req, const asu_adapter_info *info,
                      const text_sink *t) {
  char *clean = malloc(4 + 3 * (t->len + 4) + 1);
  if (!clean) {
    asu_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for the output");
    return;
  }
  asu_utf8_joiner joiner = {0};
  size_t n = asu_utf8_join(&joiner, t->text + 4, t->len, true, clean + 4);
  send_result(c, req, info, clean, n, t->tokens, req->n_raw_input_contents > 0);
  free(clean);
}

static void generate(asu_server *s, asu_rpc_call *c, const infer_request *req,
                     const asu_generation_request *g) {
  asu_sampling sp;
  const asu_lora *lora = NULL;
  asu_adapter_ref *ref = NULL;
  asu_adapter_info info;
  if (!asu_generation_begin(s, c, g, &sp, &lora, &ref, &info)) return;
  /* The prompt is not NUL-terminated in the message. */
  char *prompt = strndup(g->prompt, g->prompt_len);
  text_sink t = {.call = c, .text = malloc(64), .cap = 64};
  asu_error err;
  asu_error_clear(&err);
  int rc = prompt && t.text ? asu_generate(s->model, lora, prompt, &sp, append_piece, &t, &err)
                            : asu_error_set(&err, ASU_ERR_NOMEM, "out of memory");
  asu_registry_unpin(s->reg, ref);
  if (t.no_memory) rc = asu_error_set(&err, ASU_ERR_NOMEM, "out of memory for the output");
  if (t.client_gone)
    asu_rpc_finish(c, NULL, GRPC_STATUS_CANCELLED, "cancelled");
  else if (rc != ASU_OK)
    asu_reject(c, asu_rpc_status_from_asu(err.code), "generation failed: %s", err.message);
  else
    send_utf8(c, req, &info, &t);
  asu_log_info("request %s: ModelInfer: %u tokens", c->request_id, t.tokens);
  free(t.text);
  free(prompt);
}

int asu_oip_infer(asu_server *s, asu_rpc_call *c) {
  infer_request *req = (infer_request *)asu_rpc_recv_request(
      c, &inference__model_infer_request__descriptor);
  if (!req) return 0;
  asu_oip_model m;
  asu_generation_request g = {.adapter = ""};
  if (asu_oip_resolve(s, c, req->model_name, req->model_version, &m) &&
      read_params(c, req, &g) && read_prompt(c, req, &g) && check_outputs(c, req)) {
    bool named_adapter = strcmp(m.adapter, "none") != 0;
    if (named_adapter && g.adapter[0] && strcmp(g.adapter, m.adapter))
      asu_reject(c, GRPC_STATUS_INVALID_ARGUMENT, "the request names model \"%s\" and adapter "
                 "\"%.80s\"; name the adapter once, as the model or as the parameter",
                 m.adapter, g.adapter);
    else {
      if (named_adapter) g.adapter = m.adapter;
      g.adapter_version = m.version;
      generate(s, c, req, &g);
    }
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return 0;
}
